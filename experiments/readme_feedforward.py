"""The README's feed-forward picture: demo content | generated styles | AdaIN | WCT, with the shipped decoders.

Run (seconds on a 2-core CPU, after compilation):
  python -m experiments.readme_feedforward --out docs/images/readme_feedforward.jpg

Expected: two rows (the swirl painting, the mosaic painting) on the Grace Hopper photo (matplotlib sample data);
WCT lays the painting's colours and marks over the whole picture, face and uniform still readable; the shipped
AdaIN keeps the photo under the painting's colours with a fine texture. Each cell's label gives its style coverage
(`nst_jax.metrics.style_coverage`).
"""

from absl import app, flags

from nst_jax import demo, figures, metrics
from nst_jax.cli.wct import resolve_decoders
from nst_jax.io import image_io
from nst_jax.methods.adain import stylize as adain
from nst_jax.methods.wct import stylize as wct
from nst_jax.models import adain_decoder
from nst_jax.weights import adain_decoders
from nst_jax.weights.store import resolve_weights

_OUT = flags.DEFINE_string("out", "docs/images/readme_feedforward.jpg", "Where to write the picture.")
_SIZE = flags.DEFINE_integer("size", 384, "Long side of the content.")
_DECODERS = flags.DEFINE_string("decoders", "wct-decoders-hed-vgg16", "WCT decoder file or name.")


def main(argv):
  del argv
  weights = resolve_weights("hed-vgg16")
  adain_model = adain.make_model(weights, adain_decoders.resolve_decoder(adain_decoder.DEFAULT_DECODER))
  wct_model = wct.make_model(weights, resolve_decoders(_DECODERS.value))
  content = image_io.resize_long_side(demo.default_content(), _SIZE.value)
  rows, labels = [], []
  for name, style in (("swirls", demo.swirl_painting(384, seed=0)), ("mosaic", demo.mosaic_painting(384, seed=1))):
    style = image_io.resize_long_side(style, _SIZE.value)
    outs = {"AdaIN": adain.stylize(content, [style], model=adain_model),
            "WCT": wct.stylize(content, [style], model=wct_model)}
    rows.append([content, style, *outs.values()])
    labels.append(["content (matplotlib sample)", f"style ({name}, generated)"]
                  + [f"{k}: coverage {metrics.style_coverage(v, content, style):.2f}" for k, v in outs.items()])
  image_io.save_image(_OUT.value, figures.contact_sheet(rows, labels, cell_height=256))
  print("wrote", _OUT.value)


if __name__ == "__main__":
  app.run(main)

"""The README's results picture: demo content | generated style | Gatys stylization.

Run (about 3-4 minutes on a 2-core CPU):
  python -m experiments.readme_demo --out docs/images/readme_demo.jpg

Expected: the Grace Hopper photo (matplotlib sample data) repainted in the blue/yellow swirling strokes of the
generated style, face and uniform still recognisable; the final style loss is >= 20x lower than the initial one.
"""

from absl import app, flags

from nst_jax import demo, figures
from nst_jax.io import image_io
from nst_jax.methods import gatys
from nst_jax.objective.config import StylizeConfig
from nst_jax.weights.store import resolve_weights

_OUT = flags.DEFINE_string("out", "docs/images/readme_demo.jpg", "Where to write the picture.")
_SIZE = flags.DEFINE_integer("size", 256, "Long side of the stylized image.")
_ITERATIONS = flags.DEFINE_integer("iterations", 150, "L-BFGS iterations.")
_WEIGHTS = flags.DEFINE_string("weights", "hed-vgg16", "Weights name or path.")


def main(argv):
  del argv
  content, style = demo.default_content(), demo.default_style()
  config = StylizeConfig(size=_SIZE.value, iterations=_ITERATIONS.value)
  result = gatys.stylize(content=content, styles=style, weights=resolve_weights(_WEIGHTS.value), config=config)
  print("initial losses", result.initial_terms, "final losses", result.final_terms)
  sheet = figures.contact_sheet([[content, style, result.image]],
                                [["content (matplotlib sample)", "style (generated)", "nst_jax"]],
                                cell_height=_SIZE.value)
  image_io.save_image(_OUT.value, sheet)
  print("wrote", _OUT.value)


if __name__ == "__main__":
  app.run(main)

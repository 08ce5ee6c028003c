"""`python -m nst_jax video`: a clip stylised frame by frame and made stable in time.

  python -m nst_jax video --content clip.mp4 --style B.jpg --output out.mp4 [--method gatys|wct|adain]
  python -m nst_jax video --content frames/ --stylized other_tool/ --stabilize_only --output stable.mp4

Gatys et al. with Ruder et al.'s temporal term and warm starts (`nst_jax.methods.video.gatys_clip`; the stylize
command's optimisation, loss and colour flags apply to every frame), or a feed-forward method (WCT, AdaIN) per frame
with the style encoded once, then the consistency pass (`nst_jax.methods.video.fast_clip`). Finished frames and the
flows are kept in --state_dir, so a rerun of the same command continues at the first unfinished frame; the output
is written (atomically) at the end. Without --content, a pan over the demo photo.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import sys
import time

import numpy as np
from absl import flags

from nst_jax.cli import field_flags, shared_flags, stylize as stylize_cli, validation
from nst_jax.cli.command import Command, Sections
from nst_jax.errors import NSTError
from nst_jax.io import image_io, video as video_io
from nst_jax.methods import video
from nst_jax.objective.config import check_request
from nst_jax.video import consistency, flow as video_flow

METHODS = ("gatys", "wct", "adain", "photowct")
# The decoder file each feed-forward method takes by default (--decoders).
DEFAULT_DECODERS = {"wct": "wct-decoders-hed-vgg16", "photowct": "photowct-decoders-hed-vgg16"}
# The stylize command's flags that a clip does not take: tiles, the pyramid, several hosts, masks and depth in
# content space, intermediate images, the edge network.
DROPPED = stylize_cli.HIGHRES_FLAGS + ("num_processes", "process_id", "output_bits", "style_masks", "depth",
                                       "depth_regions", "edge_weight", "hed_weights", "save_every")
DEMO_FRAMES = 12


def define_flags(fv: flags.FlagValues) -> Sections:
  """The stylize command's flags (less `DROPPED`), the clip's and the fast paths'; returns the help sections."""
  sections = stylize_cli.define_flags(fv)
  for name in DROPPED:
    delattr(fv, name)
  sections = [(title, [n for n in names if n not in DROPPED]) for title, names in sections]
  sections = [(title, names) for title, names in sections if names]
  fv["content"].help = ("Content clip: a video file, a folder of frames or a pattern such as frames/%04d.png "
                        "(default: a pan over the demo photo).")
  fv["output"].help = ("Output: a video (.mp4, .mov, .mkv, .webm, .avi), a folder of frames or a pattern; written "
                       "atomically at the end. Audio is not kept.")
  fv.set_default("output", "stylized.mp4")
  fv.set_default("iterations", video.DEFAULT_ITERATIONS)
  fv["iterations"].help = "Gatys: optimizer steps of each frame after the first (it starts from the warped result)."
  flags.DEFINE_enum("method", "gatys", list(METHODS), "gatys: optimisation with the temporal term; wct or adain: "
                    "feed-forward per frame, then the consistency pass; photowct: photorealistic transfer from a "
                    "style photo (PhotoWCT and the closed-form smoothing, as `photoreal --method wct`) per frame, "
                    "then the consistency pass.", flag_values=fv)
  flags.DEFINE_integer("start", 0, "First frame of the clip to use (from 0).", flag_values=fv)
  flags.DEFINE_integer("stride", 1, "Use every Nth frame.", flag_values=fv)
  flags.DEFINE_integer("max_frames", None, "At most this many frames.", flag_values=fv)
  flags.DEFINE_string("state_dir", None, "Finished frames and flows, to resume a stopped run (default: beside the "
                      "output, OUTPUT.state).", flag_values=fv)
  flags.DEFINE_enum("flow_preset", video_flow.DEFAULT_PRESET, list(video_flow.PRESETS), "DIS optical flow preset.",
                    flag_values=fv)
  clip = ("clip", ["method", "start", "stride", "max_frames", "state_dir", "flow_preset"])
  flags.DEFINE_float("temporal_weight", video.DEFAULT_TEMPORAL_WEIGHT, "Gatys: weight of the temporal loss towards "
                     "earlier results warped into the frame (Ruder et al.; 0: off).", flag_values=fv)
  flags.DEFINE_list("temporal_frames", ["1"], "Gatys: the earlier frames t-j of the temporal loss, e.g. 1,2,4 "
                    "(long-term consistency).", flag_values=fv)
  flags.DEFINE_integer("iterations_first", 500, "Gatys: optimizer steps of the first frame.", flag_values=fv)
  gatys = ("gatys over a clip (Ruder et al. 2016)", ["temporal_weight", "temporal_frames", "iterations_first"])
  flags.DEFINE_bool("consistency", None, "Run the consistency pass (Bonneel et al. 2015) over the frames (default: "
                    "on for wct and adain, off for gatys).", flag_values=fv)
  flags.DEFINE_float("consistency_lambda", None, "Weight of the previous output in the pass (larger: steadier, more "
                     f"smearing; default: {consistency.STYLIZED_LAMBDA:g} for painted frames, "
                     f"{consistency.DEFAULT_LAMBDA:g} for photowct's photographs).", flag_values=fv)
  flags.DEFINE_bool("stabilize_only", False, "Only the consistency pass: --stylized frames of another tool, guided "
                    "by the --content clip's flow.", flag_values=fv)
  flags.DEFINE_string("stylized", None, "With --stabilize_only: the stylised clip (video, folder or pattern), frame "
                      "for frame the --content clip.", flag_values=fv)
  flags.DEFINE_float("alpha", 1.0, "wct, adain: content-style blend of the features in [0, 1].", flag_values=fv)
  flags.DEFINE_string("decoders", None, "wct, photowct: the decoder file or name (default: "
                      + ", ".join(f"{m}: {d}" for m, d in DEFAULT_DECODERS.items()) + ").", flag_values=fv)
  flags.DEFINE_string("decoder", "adain-decoder-hed-vgg16", "adain: the decoder file or name.", flag_values=fv)
  flags.DEFINE_bool("clip_statistics", False, "wct, adain: whiten (normalise) every frame with the content "
                    "statistics of the whole clip, so a frame's transform does not follow changes elsewhere in it "
                    "(steadier on a still shot; off by default: on moving clips it barely steadies and paints "
                    "less, docs/video.md).", flag_values=fv)
  flags.DEFINE_integer("statistics_window", 0, "wct, adain with --clip_statistics: the statistics of the N frames "
                       "centred on each frame (0: the whole clip).", flag_values=fv)
  flags.DEFINE_string("style_cache", None, "wct, adain: folder of each style file's transforms or statistics "
                      "('off' to disable).", flag_values=fv)
  fast = ("fast paths and the consistency pass", ["consistency", "consistency_lambda", "stabilize_only", "stylized",
                                                  "alpha", "clip_statistics", "statistics_window", "decoders",
                                                  "decoder", "style_cache"])
  return [sections[0], clip, *sections[1:], gatys, fast]


def consistency_lambda(fv: flags.FlagValues) -> float:
  """--consistency_lambda, or its default for the frames the pass gets: photowct's are photographs."""
  if fv.consistency_lambda is not None:
    return fv.consistency_lambda
  if fv.method == "photowct" and not fv.stabilize_only:
    return consistency.DEFAULT_LAMBDA
  return consistency.STYLIZED_LAMBDA


def default_state_dir(output: str) -> pathlib.Path:
  """OUTPUT.state beside the output (a pattern's `%04d` left out of the name)."""
  path = pathlib.Path(output)
  return path.with_name(re.sub(r"%0?\d*d", "N", path.name) + ".state")


def load_clip(fv: flags.FlagValues, source: str | None, *, what: str, size: int | None) -> video_io.Clip:
  """The selected frames of `source` at long side `size`; without a source, a pan over the demo photo."""
  if source:
    return video_io.read_frames(source, start=fv.start, stride=fv.stride, max_frames=fv.max_frames, size=size,
                                what=what)
  from nst_jax import demo  # pylint: disable=import-outside-toplevel
  count = fv.max_frames or DEMO_FRAMES
  velocity = (size / 48, size / 96)
  width, height = size, round(size * 0.75)
  photo = image_io.resize_long_side(demo.default_content(), round((width + velocity[0] * count + 4) * 600 / 512))
  frames, _ = demo.camera_pan(photo, frames=count, size=(height, width), velocity=velocity)
  return video_io.Clip(frames, None)


def stylize_gatys(fv: flags.FlagValues, frames: np.ndarray, state_dir: pathlib.Path, on_frame) -> np.ndarray:
  """The Gatys frames with the temporal term and warm starts."""
  from nst_jax.weights.store import resolve_weights  # pylint: disable=import-outside-toplevel
  config = dataclasses.replace(stylize_cli.config_from_flags(fv), temporal_weight=fv.temporal_weight,
                               size=max(frames.shape[1:3]))
  settings = video.ClipSettings(temporal_frames=shared_flags.integers(fv.temporal_frames, "--temporal_frames"),
                                iterations_first=fv.iterations_first, flow_preset=fv.flow_preset)
  styles = shared_flags.load_styles(fv.style)
  weights = resolve_weights(fv.weights)
  check_request(config, weights.arch, num_styles=len(styles), has_content=True)
  validation.check_working_size(frames.shape[1:], config.size, what="content clip",
                                minimum=validation.min_side(weights.arch, config.content_layers + config.style_layers))
  key = video.run_key([frames, *styles], ("gatys", config, settings, weights.source_sha256))
  state = video.ClipState(state_dir, key=key)
  results, _ = video.stylize_clip(frames, styles=styles, weights=weights, config=config, settings=settings,
                                  state=state, on_frame=on_frame, progress=True)
  return results


def whole_or_each(batch, fits, run):
  """A function of several frames: `batch` when frames of their size run whole (`fits(shape)`), else `run` on each
  frame (the tiled path)."""
  return lambda clip: batch(clip) if fits(clip.shape[1:3]) else np.stack([run(f) for f in clip])


def frame_stylizer(fv: flags.FlagValues, size: int):
  """(the fast method's per-frame function and its whole-clip function with clip-wide statistics, the style encoded
  once; what identifies its results; a function of several frames sharded over the devices, or None)."""
  from nst_jax.methods.adain import cache as adain_cache  # pylint: disable=import-outside-toplevel
  from nst_jax.weights.store import resolve_weights  # pylint: disable=import-outside-toplevel
  if not 0.0 <= fv.alpha <= 1.0:
    raise NSTError(f"--alpha must be in [0, 1], got {fv.alpha}")
  blend = shared_flags.floats(fv.style_blend, "--style_blend") or None
  long_side = max(16, round(size * float(fv.style_scale[0])))
  cache = adain_cache.resolve(fv.style_cache)
  cached = bool(fv.style) and fv.preserve_colors == "none"
  styles = [] if cached else [image_io.resize_long_side(s, long_side) for s in shared_flags.load_styles(fv.style)]
  decoder_file = fv.decoders or DEFAULT_DECODERS.get(fv.method)
  if fv.method == "photowct":
    return photowct_stylizer(fv, size, decoder_file)
  if fv.method == "wct":
    from nst_jax.cli import wct as wct_cli  # pylint: disable=import-outside-toplevel
    from nst_jax.methods.wct import cache as wct_cache, stylize as wct  # pylint: disable=import-outside-toplevel
    decoders = wct_cli.resolve_decoders(decoder_file)
    model = wct.make_model(resolve_weights(fv.weights), decoders)
    transforms = ([wct_cache.style_transforms(p, model=model, folder=cache, long_side=long_side) for p in fv.style]
                  if cached else [wct.style_transforms(model, s) for s in styles])
    run = lambda frame: wct.stylize(frame, [], model=model, transforms=transforms, alpha=fv.alpha,  # noqa: E731
                                    style_weights=blend)
    together = lambda clip: wct.stylize_clip(clip, model=model, transforms=transforms,  # noqa: E731
                                             alpha=fv.alpha, style_weights=blend, window=fv.statistics_window)
    identity = ("wct", decoders.info.get("note"), model.encoder_id, fv.alpha, blend, long_side)
    batch = whole_or_each(lambda clip: wct.stylize_batch(clip, model=model, transforms=transforms, alpha=fv.alpha,
                                                         style_weights=blend),
                          lambda shape: wct.runs_whole(model, shape), run)
  else:
    from nst_jax.methods.adain import stylize as adain  # pylint: disable=import-outside-toplevel
    from nst_jax.weights import adain_decoders  # pylint: disable=import-outside-toplevel
    ckpt = adain_decoders.resolve_decoder(fv.decoder)
    model = adain.make_model(resolve_weights(fv.weights) if ckpt.student is None else None, ckpt)
    stats = ([adain_cache.style_stats(p, model=model, folder=cache) for p in fv.style] if cached
             else [adain.style_statistics(model, s) for s in styles])
    run = lambda frame: adain.stylize(frame, [], model=model, style_stats=stats, alpha=fv.alpha,  # noqa: E731
                                      style_weights=blend)
    together = lambda clip: adain.stylize_clip(clip, model=model, style_stats=stats,  # noqa: E731
                                               alpha=fv.alpha, style_weights=blend, window=fv.statistics_window)
    identity = ("adain", fv.decoder, fv.alpha, blend, long_side)
    batch = whole_or_each(lambda clip: adain.stylize_batch(clip, model=model, style_stats=stats, alpha=fv.alpha,
                                                           style_weights=blend), adain.runs_whole, run)
  if fv.clip_statistics:
    identity = (*identity, "clip statistics", fv.statistics_window)
  if fv.preserve_colors != "none":
    from nst_jax.losses import color  # pylint: disable=import-outside-toplevel
    plain, plain_clip, batch = run, together, None
    run = lambda frame: np.asarray(color.combine_luminance(stylized=plain(frame), content=frame))  # noqa: E731
    together = lambda clip: np.stack([np.asarray(color.combine_luminance(  # noqa: E731
        stylized=s, content=c)) for s, c in zip(plain_clip(clip), clip)])
  return (run, together, (*identity, fv.preserve_colors, [pathlib.Path(p).read_bytes() for p in fv.style or []]),
          batch)


def photowct_stylizer(fv: flags.FlagValues, size: int, decoder_file: str):
  """`frame_stylizer` of --method photowct: each frame stylised alone with the style photo (one, resized to the
  frames' long side), no segmentation maps."""
  from nst_jax.cli import photoreal as photoreal_cli  # pylint: disable=import-outside-toplevel
  from nst_jax.methods.photoreal import photowct  # pylint: disable=import-outside-toplevel
  from nst_jax.weights.store import resolve_weights  # pylint: disable=import-outside-toplevel
  if len(fv.style or []) != 1:
    raise NSTError("--method photowct takes one --style photo")
  if fv.clip_statistics or fv.preserve_colors != "none" or fv.style_blend:
    raise NSTError("--method photowct takes no --clip_statistics, --preserve_colors or --style_blend")
  model = photowct.make_model(resolve_weights(fv.weights), photoreal_cli.resolve_photowct_decoders(decoder_file))
  style = image_io.resize_long_side(shared_flags.load_styles(fv.style)[0], size)
  run = lambda frame: photowct.stylize(frame, style, model=model, alpha=fv.alpha).image  # noqa: E731
  identity = ("photowct", decoder_file, model.encoder_id, fv.alpha, size, photowct.DEFAULT_LAMBDA,
              photowct.DEFAULT_ROUNDS)
  return run, None, (*identity, [pathlib.Path(p).read_bytes() for p in fv.style]), None


@field_flags.fields_as_flags
def run(fv: flags.FlagValues, positional: list[str]) -> pathlib.Path:
  """Stylises (or only stabilises) the clip with the parsed flags and writes --output; returns its path."""
  del positional
  source = fv.content
  output = video_io.check_output(fv.output, source=source)  # before any work
  if fv.stylized:
    video_io.check_output(fv.output, source=fv.stylized)
  if fv.stabilize_only != bool(fv.stylized):
    raise NSTError("--stabilize_only and --stylized go together: the stylised clip to stabilise")
  if fv.statistics_window < 0:
    raise NSTError(f"--statistics_window must be 0 (the whole clip) or a number of frames, got {fv.statistics_window}")
  if fv.size < 16:
    raise NSTError(f"--size must be at least 16 pixels, got {fv.size}")
  if fv.consistency_lambda is not None and not fv.consistency_lambda > 0:
    raise NSTError(f"--consistency_lambda must be a positive number, got {fv.consistency_lambda}")
  lam = consistency_lambda(fv)
  state_dir = pathlib.Path(fv.state_dir) if fv.state_dir else default_state_dir(fv.output)
  validation.check_writable_folder(state_dir, "--state_dir")
  for name, value in (("content", source), ("stylized", fv.stylized)):
    folder = video_io.input_folder(value) if value else None
    if folder is not None and video_io.same_folder(state_dir, folder):
      raise NSTError(f"--state_dir {str(state_dir)!r} is the --{name} folder; choose another")
  if fv.method == "gatys" and not fv.stabilize_only:
    stylize_cli.config_from_flags(fv)  # bad settings are refused before the clip is read
    video.ClipSettings(temporal_frames=shared_flags.integers(fv.temporal_frames, "--temporal_frames"),
                       iterations_first=fv.iterations_first)
  clip = load_clip(fv, source, what="--content", size=fv.size)
  frames = clip.frames
  started = time.perf_counter()

  def on_frame(t: int, image: np.ndarray) -> None:
    del image
    sys.stderr.write(f"frame {t + 1}/{len(frames)} done ({time.perf_counter() - started:.1f} s)\n")

  if fv.stabilize_only:
    stylized = load_clip(fv, fv.stylized, what="--stylized", size=max(frames.shape[1:3])).frames
    if stylized.shape[1:3] != frames.shape[1:3] and len(stylized) == len(frames):
      stylized = np.stack([image_io.resize(f, *frames.shape[1:3]) for f in stylized])
    results = video.stabilize(frames, stylized, lam=lam, cache_dir=state_dir,
                              preset=fv.flow_preset)
    done = "stabilised"
  else:
    if fv.method == "gatys":
      results = stylize_gatys(fv, frames, state_dir, on_frame)
    else:
      stylize_frame, stylize_clip, identity, stylize_batch = frame_stylizer(fv, max(frames.shape[1:3]))
      state = video.ClipState(state_dir, key=video.run_key([frames], identity))
      if fv.clip_statistics:
        results, _ = video.stylize_together(frames, stylize_clip, state=state, on_frame=on_frame)
      else:
        import jax  # pylint: disable=import-outside-toplevel
        results, _ = video.stylize_frames(frames, stylize_frame, state=state, on_frame=on_frame,
                                          stylize_batch=stylize_batch, batch_size=jax.device_count())
    done = fv.method
    if fv.consistency if fv.consistency is not None else fv.method != "gatys":
      results = video.stabilize(frames, results, lam=lam, cache_dir=state_dir,
                                preset=fv.flow_preset)
      done += " + consistency pass"
  video_io.write_frames(output, results, fps=clip.fps, source=source)
  print(f"wrote {output} ({len(results)} frames of {results.shape[2]}x{results.shape[1]}, {done}, "
        f"{time.perf_counter() - started:.1f} s; state in {state_dir})")
  return output


COMMAND = Command(
    name="video", prog="python -m nst_jax video", usage="--content CLIP --style PAINTING[,...] --output OUT [flags]",
    description="Stylises a clip frame by frame, stable in time: Gatys et al. with Ruder et al.'s temporal loss, or "
                "WCT/AdaIN per frame followed by Bonneel et al.'s consistency pass. Frames and flows are kept in "
                "--state_dir: rerun the same command to continue. Audio is not kept.",
    define_flags=define_flags, run=run, input_flags=("content", "style", "stylized", "weights", "decoders", "decoder"),
    folder_output=True)

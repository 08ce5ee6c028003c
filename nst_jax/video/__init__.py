"""Video: optical flow and its reliability, warping, the blind temporal-consistency pass and the warping error.

Flow convention, used everywhere in this package. A flow is float32 [H, W, 2] = (dx, dy) in pixels, defined on the
grid of the frame it starts from: `flow_ab[p]` says that pixel p of frame a shows what frame b shows at p +
flow_ab[p]. For a clip of T frames:
  forward[t]  = flow t -> t+1 (on frame t's grid),    t = 0 .. T-2
  backward[t] = flow t+1 -> t (on frame t+1's grid),  t = 0 .. T-2
so `warp(frame_t, backward[t])` is frame t moved into frame t+1, and `masks[t] = reliability(backward[t],
forward[t])` says where that prediction of frame t+1 can be trusted.
"""

"""The objective of optimisation-based transfer: settings, the plan resolved from them, and the loss terms."""

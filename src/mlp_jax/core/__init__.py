"""The core layer: parameters, activations and losses with their hand-written derivatives, the forward pass,
the hand-written backward pass, and input validation. Imports nothing from the other layers."""

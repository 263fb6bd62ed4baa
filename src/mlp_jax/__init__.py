"""mlp-jax: small, exact and fast multilayer perceptrons in JAX, with a hand-written backprop."""

from .activations import Activation as Activation
from .activations import get_activation as get_activation
from .activations import known_activations as known_activations
from .backprop import ForwardCache as ForwardCache
from .backprop import backprop as backprop
from .backprop import backward as backward
from .backprop import forward_with_cache as forward_with_cache
from .losses import Loss as Loss
from .losses import get_loss as get_loss
from .losses import known_losses as known_losses
from .model import forward as forward
from .model import loss as loss
from .params import INITS as INITS
from .params import Layer as Layer
from .params import Params as Params
from .params import init_params as init_params

__version__ = "0.1.0"

"""mlp-jax: small, exact and fast multilayer perceptrons in JAX, with a hand-written backprop."""

from .activations import Activation as Activation
from .activations import get_activation as get_activation
from .activations import known_activations as known_activations
from .activations import register_activation as register_activation
from .backprop import ForwardCache as ForwardCache
from .backprop import backprop as backprop
from .backprop import backward as backward
from .backprop import forward_with_cache as forward_with_cache
from .hostmem import keep_freed_memory as keep_freed_memory
from .losses import Loss as Loss
from .losses import get_loss as get_loss
from .losses import known_losses as known_losses
from .losses import register_loss as register_loss
from .gradcheck import check_gradients as check_gradients
from .gradcheck_report import Report as Report
from .manual import manual_loss as manual_loss
from .per_example import make_dp_gradient as make_dp_gradient
from .per_example import per_example_grad_norms as per_example_grad_norms
from .per_example import per_example_grads as per_example_grads
from .verify import DerivativeError as DerivativeError
from .model import forward as forward
from .model import loss as loss
from .params import INITS as INITS
from .params import Layer as Layer
from .params import Params as Params
from .params import init_params as init_params
from .train import TrainState as TrainState
from .train import init_train_state as init_train_state
from .train import make_evaluate as make_evaluate
from .train import make_fused_update as make_fused_update
from .train import make_train_epoch as make_train_epoch
from .train import make_update as make_update

__version__ = "0.1.0"

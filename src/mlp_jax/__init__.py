"""mlp-jax: small, exact and fast multilayer perceptrons in JAX, with a hand-written backprop."""

from mlp_jax.bench.hostmem import keep_freed_memory as keep_freed_memory
from mlp_jax.core.activations import Activation as Activation
from mlp_jax.core.activations import get_activation as get_activation
from mlp_jax.core.activations import known_activations as known_activations
from mlp_jax.core.activations import register_activation as register_activation
from mlp_jax.core.backprop import ForwardCache as ForwardCache
from mlp_jax.core.backprop import backprop as backprop
from mlp_jax.core.backprop import backward as backward
from mlp_jax.core.backprop import forward_with_cache as forward_with_cache
from mlp_jax.core.errors import CheckpointError as CheckpointError
from mlp_jax.core.errors import DataError as DataError
from mlp_jax.core.errors import DerivativeError as DerivativeError
from mlp_jax.core.errors import NonFiniteLoss as NonFiniteLoss
from mlp_jax.core.errors import NpzError as NpzError
from mlp_jax.core.errors import UsageError as UsageError
from mlp_jax.core.losses import Loss as Loss
from mlp_jax.core.losses import get_loss as get_loss
from mlp_jax.core.losses import known_losses as known_losses
from mlp_jax.core.losses import register_loss as register_loss
from mlp_jax.core.model import forward as forward
from mlp_jax.core.model import loss as loss
from mlp_jax.core.params import INITS as INITS
from mlp_jax.core.params import MAX_LAYER_SIZE as MAX_LAYER_SIZE
from mlp_jax.core.params import MAX_PARAMETERS as MAX_PARAMETERS
from mlp_jax.core.params import Layer as Layer
from mlp_jax.core.params import Params as Params
from mlp_jax.core.params import init_params as init_params
from mlp_jax.tools.gradcheck import check_gradients as check_gradients
from mlp_jax.tools.gradcheck_report import Report as Report
from mlp_jax.tools.manual import manual_loss as manual_loss
from mlp_jax.tools.per_example import make_dp_gradient as make_dp_gradient
from mlp_jax.tools.per_example import per_example_grad_norms as per_example_grad_norms
from mlp_jax.tools.per_example import per_example_grads as per_example_grads
from mlp_jax.training.steps import TrainState as TrainState
from mlp_jax.training.steps import init_train_state as init_train_state
from mlp_jax.training.steps import make_evaluate as make_evaluate
from mlp_jax.training.steps import make_fused_update as make_fused_update
from mlp_jax.training.steps import make_train_epoch as make_train_epoch
from mlp_jax.training.steps import make_update as make_update

__version__ = "0.1.0"

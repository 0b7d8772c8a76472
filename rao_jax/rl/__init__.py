"""RAO training maths: tree rewards and advantages (`advantages`), token-level policy losses (`losses`)."""
from rao_jax.rl.advantages import AdvantageConfig
from rao_jax.rl.advantages import BadRewardError
from rao_jax.rl.advantages import NodeAdvantages
from rao_jax.rl.advantages import advantages_from_trees
from rao_jax.rl.advantages import tree_advantages
from rao_jax.rl.advantages import validate_forest
from rao_jax.rl.losses import LOSSES
from rao_jax.rl.losses import cispo_loss
from rao_jax.rl.losses import get_loss
from rao_jax.rl.losses import log_prob_gap
from rao_jax.rl.losses import ppo_clip_loss
from rao_jax.rl.losses import reinforce_loss
from rao_jax.rl.losses import token_mean

"""The task description: the model components a task combines and the losses it trains.

This module imports no JAX, so config files and config checks can use it before JAX starts.
"""

import dataclasses

# Components a task can combine. "image", "text", "fusion" and "decoder" are transformer stacks, each sized by
# the config.model section of the same name. "mlm" is the MLM head, and "contrastive" is the pair of projection
# heads (config.model.embed_dim) with the learnable temperature.
COMPONENTS = ("image", "text", "fusion", "decoder", "mlm", "contrastive")
STACK_COMPONENTS = ("image", "text", "fusion", "decoder")
# The loss each head trains, and the config.loss weight that scales it.
LOSS_OF_COMPONENT = {"decoder": "mae", "mlm": "mlm", "contrastive": "contrastive"}


@dataclasses.dataclass(frozen=True)
class Task:
    """One training task of the launcher.

    Attributes:
      name: the value of config.task.
      summary: one line for logs and errors.
      components: the model components it combines, from COMPONENTS.
      losses: the losses it trains, from LOSS_OF_COMPONENT's values; they must be the losses of its heads.
    """

    name: str
    summary: str
    components: tuple[str, ...]
    losses: tuple[str, ...]

    def __post_init__(self):
        unknown = sorted(set(self.components) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"task {self.name!r}: unknown components {unknown}; known: {', '.join(COMPONENTS)}")
        head_losses = {LOSS_OF_COMPONENT[name] for name in self.components if name in LOSS_OF_COMPONENT}
        if set(self.losses) != head_losses:
            raise ValueError(f"task {self.name!r}: losses {sorted(self.losses)} do not match the losses of its "
                             f"heads {sorted(head_losses)}")

    def has(self, component: str) -> bool:
        return component in self.components

    @property
    def uses_images(self) -> bool:
        return self.has("image")

    @property
    def uses_text(self) -> bool:
        return self.has("text")

    @property
    def modalities(self) -> tuple[str, ...]:
        """("image",), ("text",) or ("image", "text"): what each training example holds."""
        return tuple(name for name, used in (("image", self.uses_images), ("text", self.uses_text)) if used)

    @property
    def writes_reconstructions(self) -> bool:
        """Whether evaluations write reconstruction grids: every task with an MAE decoder does."""
        return self.has("decoder")

    @property
    def evaluates_retrieval(self) -> bool:
        return self.has("contrastive")

    @property
    def evaluates_reconstruction_loss(self) -> bool:
        """Held-out MAE loss; a fusion decoder's output depends on the caption, so fusion tasks report retrieval."""
        return self.has("decoder") and not self.has("fusion")

    @property
    def evaluates_masked_tokens(self) -> bool:
        """Held-out MLM accuracy and perplexity, for MLM heads that read the text encoder directly."""
        return self.has("mlm") and not self.has("fusion")

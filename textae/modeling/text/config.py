"""Options of the text family (`model.bottleneck` when `model.family` is "text")."""

from __future__ import annotations

from dataclasses import dataclass

ESTIMATORS = ("reinforce", "gumbel")


@dataclass
class TextConfig:
    """The middle text is `min(max_words, ceil(ratio · words))` words of the input, in order."""

    max_words: int = 10  # word budget of the middle text (the summary length)
    ratio: float = 0.5  # ... and at most this fraction of the input's words, so it never copies
    estimator: str = "reinforce"  # "reinforce" (self-critical baseline) or "gumbel" (relaxed top-k, straight-through)
    gumbel_temperature: float = 0.5  # softness of the relaxed top-k (gumbel only)
    adversarial_weight: float = 0.1  # weight of the WGAN-GP critic's score; 0 = no discriminator
    prior_weight: float = 0.0  # weight of a corpus language model's NLL of the middle text; 0 = no prior
    phrase_weight: float = 1.0  # cost of each break between the summary's phrases (choosing, not training)
    fluency_weight: float = 0.0  # weight of the corpus LM's surprise at each break (choosing; > 0 trains the LM)
    similarity_weight: float = 20.0  # reward: the middle text's cosine similarity to the input (frozen MiniLM); 0 = none
    salience_weight: float = 10.0  # learn the frozen MiniLM's word salience (salience.py); 0 = none
    salience_rows: int = 64  # sentences per batch whose salience is measured (one MiniLM pass each)
    critic_dim: int = 64  # width of the critic
    critic_layers: int = 1
    lm_dim: int = 128  # width of the corpus LM (the fluency term and the prior)
    lm_layers: int = 2
    lm_lr: float = 2e-3  # the corpus LM's own Adam optimiser
    gp_weight: float = 10.0  # WGAN-GP gradient penalty
    critic_lr: float = 5e-4  # the critic's (and prior's) own Adam optimiser
    random_steps: int = 0  # first steps keep random words: the reconstructor learns before the compressor

    def __post_init__(self) -> None:
        if self.max_words < 1:
            raise ValueError(f"max_words must be >= 1, got {self.max_words}")
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if self.gumbel_temperature <= 0:
            raise ValueError(f"gumbel_temperature must be > 0, got {self.gumbel_temperature}")
        weights = ("adversarial_weight", "prior_weight", "phrase_weight", "fluency_weight", "similarity_weight",
                   "salience_weight")
        if min(getattr(self, w) for w in weights) < 0:
            raise ValueError(f"{', '.join(weights)} must be >= 0")
        if self.salience_rows < 1:
            raise ValueError(f"salience_rows must be >= 1, got {self.salience_rows}")
        if self.similarity_weight and self.estimator != "reinforce":
            raise ValueError("similarity_weight needs estimator 'reinforce' (the sentence encoder reads text, so no "
                             "gradient reaches the compressor through it); set similarity_weight: 0 to use gumbel")

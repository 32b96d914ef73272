"""What things cost, in credits, and what credits cost. Defaults are the product's; all configurable."""

from __future__ import annotations

from dataclasses import dataclass, field

from billing.packages import Catalogue
from config.settings import Env


@dataclass
class Pricing:
    message: int = 1
    audio_per_minute: int = 5
    video_per_minute: int = 10
    signup_bonus: int = 10
    packages: Catalogue = field(default_factory=Catalogue, compare=False)
    """The credit packages on sale (`billing.packages`, PAIRLY_CREDIT_PACKAGES)."""

    def apply(self, message: int, audio_per_minute: int, video_per_minute: int, signup_bonus: int) -> None:
        """Change the prices in place: every holder of this object (creators' default rates, the packages
        route) sees them from its next read. Runtime pricing (`billing.runtime_pricing`) is the caller."""
        self.message, self.audio_per_minute, self.video_per_minute = message, audio_per_minute, video_per_minute
        self.signup_bonus = signup_bonus

    def call_per_minute(self, media: str) -> int:
        return self.video_per_minute if media == "video" else self.audio_per_minute

    def public(self) -> dict[str, int]:
        return {"message": self.message, "audio_per_minute": self.audio_per_minute,
                "video_per_minute": self.video_per_minute, "signup_bonus": self.signup_bonus}

    @classmethod
    def from_env(cls, env: Env) -> Pricing:
        return cls(
            message=env.integer("PAIRLY_PRICE_MESSAGE", cls.message, min_value=0),
            audio_per_minute=env.integer("PAIRLY_PRICE_AUDIO_PER_MIN", cls.audio_per_minute, min_value=0),
            video_per_minute=env.integer("PAIRLY_PRICE_VIDEO_PER_MIN", cls.video_per_minute, min_value=0),
            signup_bonus=env.integer("PAIRLY_SIGNUP_BONUS", cls.signup_bonus, min_value=0),
            packages=Catalogue.from_env(env),
        )

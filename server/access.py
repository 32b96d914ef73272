"""Who may connect or call the API: token checks, the jti deny-list, bans and token cut-offs."""

from __future__ import annotations

from server.auth import AuthRefused, Identity, TokenVerifier
from server.revocation import RevocationStore
from server.users import UserStore


class AccessControl:
    def __init__(self, verifier: TokenVerifier, users: UserStore, revocations: RevocationStore) -> None:
        self._verifier = verifier
        self._users = users
        self._revocations = revocations

    async def authenticate(self, token: str | None) -> Identity:
        """Return the identity behind `token`, or raise `AuthRefused` with the protocol code."""
        identity = self._verifier.verify(token)
        if identity.jti and await self._revocations.is_revoked(identity.jti):
            raise AuthRefused("auth_revoked", "token has been revoked")
        status = await self._users.status(identity.user_id)
        if status.banned:
            raise AuthRefused("banned", "account is banned")
        if status.tokens_valid_after is not None and (
            identity.issued_at is None or identity.issued_at < int(status.tokens_valid_after)
        ):
            # `iat` has whole-second resolution, so the cut-off is compared at that resolution too:
            # a token minted in the same second as the revocation is accepted.
            raise AuthRefused("auth_revoked", "token was issued before the account's sessions were revoked")
        return identity

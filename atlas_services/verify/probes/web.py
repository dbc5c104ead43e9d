"""web: GET the canary page over HTTP and HTTPS, compare its checksum, check the certificate."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from atlas_services import clock, tls
from atlas_services.results import Outcome, Status, worst
from atlas_services.verify.probes import Probe, first_line

# A certificate that ends sooner than this is reported before it breaks anything.
EXPIRY_WARNING = dt.timedelta(days=14)


def certificate_outcome(not_before: dt.datetime, not_after: dt.datetime,
                        now: dt.datetime) -> Outcome:
    """Judge a certificate's validity window at `now` (pure)."""
    if now < not_before:
        return Outcome.failed(f"certificate not valid before {not_before:%Y-%m-%d %H:%M} UTC")
    if now >= not_after:
        return Outcome.failed(f"certificate expired {not_after:%Y-%m-%d %H:%M} UTC")
    left = not_after - now
    if left < EXPIRY_WARNING:
        return Outcome.degraded(f"certificate expires in {left.days} days ({not_after:%Y-%m-%d})")
    return Outcome.ok(f"certificate valid until {not_after:%Y-%m-%d}")


def _insecure_context() -> ssl.SSLContext:
    # The role's certificate is self-signed: the probe judges its validity window
    # itself instead of trusting a CA it could not know.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class WebProbe(Probe):
    """*The canary page reads the same over HTTP and HTTPS, and the certificate is valid.*"""

    host: str
    http_port: int
    https_port: int
    path: str
    expected_sha256: str
    timeout: float = 5.0
    now: Callable[[], dt.datetime] = field(default=clock.utcnow)
    name: str = "web"

    @property
    def target(self) -> str:
        return f"{self.path} on {self.host} (http {self.http_port}, https {self.https_port})"

    def _get(self, conn: http.client.HTTPConnection) -> tuple[int, bytes, bytes | None]:
        try:
            conn.request("GET", self.path, headers={"Cache-Control": "no-cache",
                                                    "User-Agent": "atlas-verify"})
            response = conn.getresponse()
            body = response.read()
            der = None
            if isinstance(conn.sock, ssl.SSLSocket):
                der = conn.sock.getpeercert(binary_form=True)
            return response.status, body, der
        finally:
            conn.close()

    def _page(self, scheme: str, conn: http.client.HTTPConnection) -> tuple[Outcome, bytes | None]:
        try:
            status, body, der = self._get(conn)
        except (OSError, http.client.HTTPException) as err:
            return Outcome.failed(f"{scheme}: {first_line(err)}"), None
        if status != 200:
            return Outcome.failed(f"{scheme}: HTTP {status} for {self.path}"), der
        digest = hashlib.sha256(body).hexdigest()
        if digest != self.expected_sha256:
            return Outcome.failed(f"{scheme}: canary content changed (sha256 {digest[:12]}…, "
                                  f"expected {self.expected_sha256[:12]}…)"), der
        return Outcome.ok(f"{scheme} canary ok"), der

    def check(self) -> Outcome:
        plain, _ = self._page("http", http.client.HTTPConnection(
            self.host, self.http_port, timeout=self.timeout / 2))
        secure, der = self._page("https", http.client.HTTPSConnection(
            self.host, self.https_port, timeout=self.timeout / 2, context=_insecure_context()))
        outcomes = [plain, secure]
        if der is not None:
            try:
                not_before, not_after = tls.validity(der)
            except ValueError as err:
                outcomes.append(Outcome.failed(f"certificate unreadable: {first_line(err)}"))
            else:
                outcomes.append(certificate_outcome(not_before, not_after, self.now()))
        status = worst(o.status for o in outcomes)
        shown = [o for o in outcomes if o.status is not Status.OK] or outcomes
        return Outcome(status, "; ".join(o.message for o in shown))

"""os-release parsing and the status summary."""

from __future__ import annotations

from atlas_services import osinfo
from atlas_services.status import ServerStatus


def test_os_release_values_are_unquoted() -> None:
    text = 'ID=debian\nIMAGE_VERSION="0.1.0"\n# comment\nPRETTY_NAME=\'Debian 12\'\nbroken\n'
    assert osinfo.parse_os_release(text) == {"ID": "debian", "IMAGE_VERSION": "0.1.0",
                                             "PRETTY_NAME": "Debian 12"}


def test_status_text_names_the_role_and_why() -> None:
    status = ServerStatus(hostname="shop1", atlas_version="0.1.0", image_id="atlas",
                    image_version="0.1.0", role="standby", role_reason="no data set found")
    text = status.to_text()
    assert "standby (no data set found)" in text
    assert "shop1" in text


def test_status_text_shows_an_update_on_trial() -> None:
    status = ServerStatus(hostname="shop2", atlas_version="0.1.0", image_id="atlas", image_version="0.1.0",
                    role="secondary", role_reason="", update=("atlas_services 0.2.0 on trial",))
    assert "update  atlas_services 0.2.0 on trial" in status.to_text()

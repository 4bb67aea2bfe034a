"""pytest entry: the fixtures live in sluice_fixtures (shared with conformance/)."""

from sluice_fixtures import *  # noqa: F401,F403
from sluice_fixtures import gateway, lake, workdir  # noqa: F401
from s3_fixtures import azurite, s3  # noqa: F401

"""Who is moving @champion: an identity the tracking server authenticated, never a name typed
into a form.

Against a tracking server the identity is what the server says the request's credentials
belong to (`GET /api/2.0/mlflow/users/current`, answered by `mlflow server --app-name
basic-auth`), whichever way MLflow sent them: `MLFLOW_TRACKING_USERNAME` / `_PASSWORD`, the
credentials file `~/.mlflow/credentials`, or a token. A server that cannot say (no
authentication) gives no identity, and reviewer actions are refused. A local store (sqlite,
files) has no sign-in at all: whoever can run the command can write the database, so the name
given (or the OS account) is recorded, marked as not authenticated.
"""
from __future__ import annotations

import getpass
from dataclasses import dataclass
from urllib.parse import urlparse

from tasks.registry.errors import GovernanceError

CURRENT_USER = "/api/2.0/mlflow/users/current"
LOCAL_SOURCE = "local store: no sign-in, not authenticated"
SERVER_SOURCE = "authenticated by the MLflow server"


@dataclass(frozen=True)
class Identity:
    user: str
    source: str


def is_server(tracking_uri: str) -> bool:
    return urlparse(tracking_uri).scheme in ("http", "https")


def configured_username() -> str | None:
    """The user name MLflow would sign in with: MLFLOW_TRACKING_USERNAME, else the credentials file."""
    from mlflow.utils.credentials import read_mlflow_creds

    return read_mlflow_creds().username


def server_user(tracking_uri: str, creds=None) -> str:
    """The account the server authenticates this process's credentials as (or `creds`, an
    MlflowHostCreds: a reviewer signing in to the review page with their own account)."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:   # 10 s, no retries: a sign-in check, not a workload
        response = http_request(creds or get_default_host_creds(tracking_uri), CURRENT_USER, "GET", max_retries=0,
                                timeout=10, raise_on_status=False)
    except Exception as exc:
        raise GovernanceError(f"cannot reach the tracking server {tracking_uri} to establish who you are "
                              f"({type(exc).__name__}); nothing changed") from exc
    if response.status_code in (401, 403):
        raise GovernanceError(f"the tracking server {tracking_uri} did not accept your credentials "
                              f"(HTTP {response.status_code}); sign in with your own MLflow account "
                              "(MLFLOW_TRACKING_USERNAME / _PASSWORD, ~/.mlflow/credentials or a token)")
    user = None
    if response.status_code == 200:
        try:
            user = (response.json().get("user") or {}).get("username")
        except ValueError:
            user = None
    if not user and response.status_code == 404:
        raise GovernanceError(f"the tracking server {tracking_uri} cannot say who you are (HTTP 404 from "
                              f"{CURRENT_USER}: it runs without authentication); reviewer actions need "
                              "`mlflow server --app-name basic-auth` (infra/README.md)")
    if not user:   # e.g. a token the basic-auth app cannot read: MLflow 3.17 answers 500 with its cache on
        raise GovernanceError(f"the tracking server {tracking_uri} could not establish who you are (HTTP "
                              f"{response.status_code} from {CURRENT_USER}); sign in with your own MLflow "
                              "account; nothing changed")
    return str(user)


def establish(tracking_uri: str, claimed: str | None = None) -> Identity:
    """The reviewer's identity. On a server, a `claimed` name must be the signed-in account."""
    claimed = (claimed or "").strip() or None
    if is_server(tracking_uri):
        user = server_user(tracking_uri)
        if claimed is not None and claimed != user:
            raise GovernanceError(f"you are signed in to MLflow as {user!r}, not {claimed!r}: the audit "
                                  "history records the account that makes the change; nothing changed")
        return Identity(user, SERVER_SOURCE)
    return Identity(claimed or getpass.getuser(), LOCAL_SOURCE)


def refuse_pipeline_account(pipeline_account: str | None, identity: Identity | None = None) -> None:
    """MLflow cannot stop an account that may register versions and set @challenger from also
    moving @champion (both need EDIT on the registered model). adaptflow refuses reviewer actions
    under the pipeline's own account, however its credentials were given; infra/README.md, "Access"."""
    if not pipeline_account:
        return
    names = {identity.user if identity else None, configured_username()}
    if pipeline_account in names:
        raise GovernanceError(f"the pipeline's account ({pipeline_account}) may not move @champion; "
                              f"a reviewer signs in with their own MLflow account")

"""infra/ secrets reach the services or stop them, loudly: the entry point (secrets-env.sh), the
compose file's inline entry points and minio-users.sh refuse a secret that is missing, unreadable
or empty instead of starting a service with an empty password, and the documented setup
(infra/README.md, "Secrets") gives files the image's user (uid 10001) can read.

"Unreadable" is real here: the scripts run as uid 10001 (`setpriv`), as in the container, on
files made by root with the README's commands; a bind mount is simulated by a hard link (same
inode: same owner and mode), which is what Docker Compose mounts for a file secret."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

INFRA = ROOT / "infra"
IMAGE_UID = 10001   # infra/Dockerfile: USER 10001
SETPRIV = shutil.which("setpriv")
as_image_user = pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None,
                                   reason="needs root and setpriv to run as uid 10001")


@pytest.fixture
def shared_dir():
    """A folder uid 10001 can enter (pytest's tmp_path is root's alone), on tmp_path's filesystem."""
    path = Path(tempfile.mkdtemp(prefix="adaptflow-secrets-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def run_as(uid: int | None, argv: list[str], env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    prefix = [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid is not None else []
    return subprocess.run(prefix + argv, env={"PATH": os.environ["PATH"], **env}, capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def entry_point(shared: Path) -> Path:
    script = shared / "secrets-env.sh"
    shutil.copy(INFRA / "secrets-env.sh", script)
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("shell", ["sh", "bash"])
@as_image_user
def test_an_unreadable_secret_stops_the_entry_point(shared_dir, shell):
    """On the old script a secret uid 10001 could not read was exported empty and the command ran
    (exit 0, `DB_PASSWORD=` in its environment)."""
    script, secrets = entry_point(shared_dir), shared_dir / "run-secrets"
    secrets.mkdir(mode=0o755)
    (secrets / "DB_PASSWORD").write_text("s3cret")
    (secrets / "DB_PASSWORD").chmod(0o600)   # root's, as `umask 077` leaves it on the host
    done = run_as(IMAGE_UID, [shell, str(script), "env"], {"SECRETS_DIR": str(secrets)})
    assert done.returncode != 0 and "DB_PASSWORD=" not in done.stdout, done.stdout
    assert f"cannot read secret {secrets / 'DB_PASSWORD'}" in done.stderr and "uid 10001" in done.stderr
    assert 'infra/README.md, "Secrets"' in done.stderr


@pytest.mark.parametrize("make", ["folder", "empty", "dangling link"])
def test_a_secret_that_is_not_a_readable_file_stops_the_entry_point(shared_dir, make):
    """Compose mounts a missing secret source as an empty folder; the old script skipped it (and an
    empty file or a dangling link) and ran the command without the variable."""
    script, secrets = entry_point(shared_dir), shared_dir / "run-secrets"
    secrets.mkdir()
    target = secrets / "DB_PASSWORD"
    {"folder": lambda: target.mkdir(), "empty": lambda: target.write_text(""),
     "dangling link": lambda: target.symlink_to(secrets / "gone")}[make]()
    done = run_as(None, ["sh", str(script), "env"], {"SECRETS_DIR": str(secrets)})
    assert done.returncode != 0 and "DB_PASSWORD" in done.stderr, (done.stdout, done.stderr)
    assert "PATH=" not in done.stdout   # the command never ran


def test_readable_secrets_are_exported_and_others_ignored(shared_dir):
    script, secrets = entry_point(shared_dir), shared_dir / "run-secrets"
    secrets.mkdir()
    (secrets / "DB_PASSWORD").write_text("s3cret\n")
    (secrets / "basic_auth.ini").write_text("[mlflow]\n")   # not named like a variable: left alone
    done = run_as(None, ["sh", str(script), "env"], {"SECRETS_DIR": str(secrets)})
    assert done.returncode == 0, done.stderr
    assert "DB_PASSWORD=s3cret" in done.stdout.splitlines() and "basic_auth" not in done.stdout


def compose_entrypoint(service: str, secrets: Path) -> str:
    """The service's inline entry point as its shell runs it (compose's `$$` is `$`)."""
    argv = yaml.safe_load((INFRA / "docker-compose.yml").read_text())["services"][service]["entrypoint"]
    assert argv[:2] == ["/bin/sh", "-c"]
    return argv[2].replace("$$", "$").replace("/run/secrets/", f"{secrets}/").replace("secrets-env.sh", "true")


@pytest.mark.parametrize("service", ["mlflow", "worker"])
def test_the_compose_entry_points_stop_on_an_unreadable_password(tmp_path, service):
    """Old: `export URL="postgresql://...:$(cat missing)@..."` exported a URL with an empty password
    and exec'd the service (exit 0)."""
    done = subprocess.run(["sh", "-c", compose_entrypoint(service, tmp_path), "--"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode != 0 and "-db-password" in done.stderr and "Secrets" in done.stderr, done.stderr
    password = next(tmp_path.iterdir(), None)
    assert password is None
    name = re.search(r"/run/secrets/([\w-]+)", yaml.safe_dump(
        yaml.safe_load((INFRA / "docker-compose.yml").read_text())["services"][service]["entrypoint"])).group(1)
    (tmp_path / name).write_text("pw")
    done = subprocess.run(["sh", "-c", compose_entrypoint(service, tmp_path), "--"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_minio_users_stops_on_a_missing_secret(tmp_path):
    """Old: the root user and password went into MC_HOST_local through "$(secret ...)" inside an
    export, so a missing file left them empty and `mc` ran anyway."""
    script = (INFRA / "minio-users.sh").read_text().replace("/run/secrets/", f"{tmp_path}/")
    (tmp_path / "minio-users.sh").write_text(script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mc").write_text("#!/bin/sh\necho mc-ran \"$@\"\n")
    (bin_dir / "mc").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "MINIO_ROOT_USER": "adaptflow"}
    done = subprocess.run(["sh", str(tmp_path / "minio-users.sh")], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode != 0 and "mc-ran" not in done.stdout, done.stdout
    assert "minio-root-password" in done.stderr


def readme_setup_block() -> str:
    readme = (INFRA / "README.md").read_text()
    section = readme[readme.index("#### Secrets"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@as_image_user
def test_the_documented_setup_gives_secrets_the_image_user_can_read(tmp_path, shared_dir):
    """Runs the README's setup block, mounts the worker's secrets as compose does (same inode at
    /run/secrets/TARGET) and starts the entry point as uid 10001. With the old setup (`umask 077`,
    files 0600 owned by the operator) the worker's secrets were unreadable in the container."""
    if shutil.which("openssl") is None:
        pytest.skip("the README's setup uses openssl")
    done = subprocess.run(["bash", "-euc", readme_setup_block()], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "infra" / "secrets"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700   # other host accounts cannot reach the files
    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    files = {name: spec["file"].removeprefix("./secrets/") for name, spec in compose["secrets"].items()}
    script, exported = entry_point(shared_dir), {}
    for service in ("worker", "mlflow"):
        mounted = shared_dir / service
        mounted.mkdir(mode=0o755)
        for spec in compose["services"][service]["secrets"]:
            source, target = (spec, spec) if isinstance(spec, str) else (spec["source"], spec.get("target", spec["source"]))
            os.link(folder / files[source], mounted / target)
        done = run_as(IMAGE_UID, ["sh", str(script), "env"], {"SECRETS_DIR": str(mounted)})
        assert done.returncode == 0, (service, done.stderr)
        exported |= dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert exported["MLFLOW_TRACKING_USERNAME"] == "adaptflow-pipeline"
    assert len(exported["MLFLOW_TRACKING_PASSWORD"]) == 48 and exported["PREFECT_API_AUTH_STRING"].startswith("adaptflow:")
    assert len(exported["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == 48

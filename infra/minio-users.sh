#!/bin/sh
# One-shot (the `buckets` service / the minio-buckets Job): the two buckets, and one MinIO user
# per service with access to its own bucket only: MLflow's server to adaptflow-mlflow, the
# pipeline's jobs (DVC remote) to adaptflow-dvc. Only this job and MinIO itself hold the root
# credentials. Root credentials travel in MC_HOST_local (the environment), not on a command line;
# the service users' secrets are arguments of `mc admin user add` inside this container only.
set -eu
# Each secret is assigned before use: under set -e a failed `cat` then stops the script, which
# "$(cat f)" inside an export or an argument would not; an empty one stops it too.
secret() { v=$(if [ -n "$2" ]; then printf %s "$2"; else cat "/run/secrets/$1"; fi) && [ -n "$v" ] \
  || { echo "minio-users.sh: secret $1 is missing, unreadable or empty" >&2; exit 1; }; printf %s "$v"; }
root_user=$(secret minio-root-user "${MINIO_ROOT_USER:-}")
root_pw=$(secret minio-root-password "${MINIO_ROOT_PASSWORD:-}")
mlflow_id=$(secret mlflow-s3-key-id "${MLFLOW_S3_KEY_ID:-}")
mlflow_secret=$(secret mlflow-s3-secret "${MLFLOW_S3_SECRET:-}")
dvc_id=$(secret dvc-s3-key-id "${DVC_S3_KEY_ID:-}")
dvc_secret=$(secret dvc-s3-secret "${DVC_S3_SECRET:-}")
export MC_HOST_local="http://$root_user:$root_pw@minio:9000"
mc mb --ignore-existing local/adaptflow-mlflow local/adaptflow-dvc
for svc in mlflow dvc; do
  cat > "/tmp/$svc.json" <<JSON
{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"],
 "Resource": ["arn:aws:s3:::adaptflow-$svc", "arn:aws:s3:::adaptflow-$svc/*"]}]}
JSON
  mc admin policy create local "adaptflow-$svc" "/tmp/$svc.json" 2>/dev/null || true
done
mc admin user add local "$mlflow_id" "$mlflow_secret"
mc admin policy attach local adaptflow-mlflow --user "$mlflow_id" || true
mc admin user add local "$dvc_id" "$dvc_secret"
mc admin policy attach local adaptflow-dvc --user "$dvc_id" || true

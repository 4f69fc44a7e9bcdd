#!/bin/sh
# One-shot (the `buckets` service / the minio-buckets Job): the two buckets, and one MinIO user
# per service with access to its own bucket only: MLflow's server to adaptflow-mlflow, the
# pipeline's jobs (DVC remote) to adaptflow-dvc. Only this job and MinIO itself hold the root
# credentials. Root credentials travel in MC_HOST_local (the environment), not on a command line;
# the service users' secrets are arguments of `mc admin user add` inside this container only.
set -eu
secret() { if [ -n "$2" ]; then printf %s "$2"; else cat "/run/secrets/$1"; fi; }
export MC_HOST_local="http://$(secret minio-root-user "${MINIO_ROOT_USER:-}"):$(secret minio-root-password "${MINIO_ROOT_PASSWORD:-}")@minio:9000"
mc mb --ignore-existing local/adaptflow-mlflow local/adaptflow-dvc
for svc in mlflow dvc; do
  cat > "/tmp/$svc.json" <<JSON
{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"],
 "Resource": ["arn:aws:s3:::adaptflow-$svc", "arn:aws:s3:::adaptflow-$svc/*"]}]}
JSON
  mc admin policy create local "adaptflow-$svc" "/tmp/$svc.json" 2>/dev/null || true
done
mc admin user add local "$(secret mlflow-s3-key-id "${MLFLOW_S3_KEY_ID:-}")" "$(secret mlflow-s3-secret "${MLFLOW_S3_SECRET:-}")"
mc admin policy attach local adaptflow-mlflow --user "$(secret mlflow-s3-key-id "${MLFLOW_S3_KEY_ID:-}")" || true
mc admin user add local "$(secret dvc-s3-key-id "${DVC_S3_KEY_ID:-}")" "$(secret dvc-s3-secret "${DVC_S3_SECRET:-}")"
mc admin policy attach local adaptflow-dvc --user "$(secret dvc-s3-key-id "${DVC_S3_KEY_ID:-}")" || true

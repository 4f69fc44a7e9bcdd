#!/bin/sh
# Run once by the postgres image on a new volume: one role and database per service (prefect;
# mlflow and its auth database mlflow_auth; optuna, the tuning studies flow runs share), so a
# leaked MLflow password does not open Prefect's database and no service holds the superuser.
# Passwords come from the environment (Kubernetes secret references) or from Docker secret files,
# and reach psql on stdin, never on a command line. They must not contain a single quote.
set -eu
secret() { if [ -n "$2" ]; then printf %s "$2"; else cat "/run/secrets/$1"; fi; }
prefect_pw=$(secret prefect-db-password "${PREFECT_DB_PASSWORD:-}")
mlflow_pw=$(secret mlflow-db-password "${MLFLOW_DB_PASSWORD:-}")
optuna_pw=$(secret optuna-db-password "${OPTUNA_DB_PASSWORD:-}")
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE prefect LOGIN PASSWORD '$prefect_pw';
CREATE DATABASE prefect OWNER prefect;
CREATE ROLE mlflow LOGIN PASSWORD '$mlflow_pw';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE ROLE optuna LOGIN PASSWORD '$optuna_pw';
CREATE DATABASE optuna OWNER optuna;
SQL

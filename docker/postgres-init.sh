#!/bin/sh
# Runs once, when the PostgreSQL volume is created (docker-entrypoint-initdb.d). The pipeline's
# owner is POSTGRES_USER (it creates the BI role on its first publication); Metabase keeps its
# application data in a database and role of its own, never in the warehouse.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v mb_pass="$MB_DB_PASS" -v warehouse="$VOICE_ANALYTICS_DATABASE" <<'SQL'
create database dagster;
create database :"warehouse";
create role metabase_app login password :'mb_pass';
create database metabase owner metabase_app;
SQL

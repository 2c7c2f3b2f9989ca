#!/usr/bin/env bash
# Creates (or refreshes) a virtualenv with this project and one Airflow line installed.
# usage: scripts/venv.sh VENV_DIR AIRFLOW_SPEC [PIN ...]   e.g. scripts/venv.sh .venv 'apache-airflow>=3.3,<3.4'
set -euo pipefail
venv=$1
airflow_spec=$2
shift 2
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv"
  "$python" -m venv "$venv"
fi
# uv resolves Airflow's large dependency tree in seconds where pip takes minutes.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "uv>=0.4"
echo "==> installing airflow-provider-ccp[dev] with $airflow_spec into $venv"
"$venv/bin/python" -m uv pip install --quiet --python "$venv/bin/python" -e ".[dev]" "$airflow_spec" "$@"
touch "$venv/.installed"

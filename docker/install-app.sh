#!/bin/sh
# Shared by the Dockerfile's two final stages: install the project wheel into the venv copied there, check the
# environment is whole, seed /library with the bundled sample (the compose file's default library) and give
# /library and /index to the service user, so fresh named volumes inherit that.
set -eu
pip install -q --no-deps /tmp/wheels/*.whl
rm -rf /tmp/wheels
# With the gpu extra pip check reports the swapped-out faiss-cpu/onnxruntime, which the GPU builds replace.
pip check || case "${EXTRAS:-}" in *gpu*) true;; *) exit 1;; esac
mkdir -p /library /index
cp -r "$(python -c 'import audiosearch.app as a, os; print(os.path.dirname(a.__file__))')/sample/." /library/
chown -R audiosearch:audiosearch /library /index

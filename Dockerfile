# Placeholder: the multi-stage image (target `service` without torch, target
# `trainer` with it) arrives with the containers issue. Nothing builds from this
# file yet; use `make run` on the host.

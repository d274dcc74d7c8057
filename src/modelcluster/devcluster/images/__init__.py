"""The control-plane and model images: built from their Dockerfiles (buildah or Docker) and run with runc."""

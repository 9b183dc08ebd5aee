"""Authenticated, encrypted infra planes: the credentials etcd and NATS require (docs/security-planes.md)."""

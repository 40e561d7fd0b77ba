"""The local run and the tests' AWS: moto on loopback, the sandbox panel, the resources."""

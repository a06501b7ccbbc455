"""Your services: `just scaffold-consumer OPERATION` writes one module here per receive
operation, each with a module-level `SERVICE` that the runtime's registry discovers."""

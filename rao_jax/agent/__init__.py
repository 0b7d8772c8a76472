"""The recursive agent: turn protocol, chat layouts and the sandboxed code interpreter."""

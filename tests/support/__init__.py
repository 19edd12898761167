"""What the tests share: the servers' URLs, waiting for things, running the CLI, databases,
scripted HTTP endpoints. Test modules import from here, never from one another."""

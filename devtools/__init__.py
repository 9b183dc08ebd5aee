"""Development tools: local services, handler loading, benchmarks. Not shipped to Lambda."""

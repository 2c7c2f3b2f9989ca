"""TaskFlow decorators of the CCP provider."""

"""samplers plugins: importing this package registers every built-in one."""

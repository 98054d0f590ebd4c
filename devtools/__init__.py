"""Developer tools that run on this machine, never deployed: throwaway PostgreSQL and MariaDB
servers with TLS (servers.py), their read replicas (replicas.py), the TLS material they use
(tls.py), and `make sandbox` (sandbox.py). The test suite, `make demo`, `make bench` and
`make sandbox` share them; sam build packages only functions/ and layers/.
"""

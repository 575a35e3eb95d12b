"""PostgreSQL adapters (psycopg 3): pool, migrations and one repository per aggregate."""

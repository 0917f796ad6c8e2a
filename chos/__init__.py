"""CHOS: several Linux environments on one node; each job runs in the one it asks for (PDSF style)."""

"""What a WorkPool author may make the operator do: API URL policy and admission checks."""

"""Protocol clients. No pytest in here: each probe returns typed results and a transcript."""

"""Filter-and-weigh scheduling done in SQL, with the claim in the same transaction."""

"""On-disk transcoder formats: readers for every supported layout and our writer."""

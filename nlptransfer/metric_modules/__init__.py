"""evaluate metric modules shipped for offline use; load them by path (see nlptransfer.metrics)."""

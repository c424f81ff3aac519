"""What is stored: runs, photo sets, the catalog of models, owners and limits, the leaderboard."""

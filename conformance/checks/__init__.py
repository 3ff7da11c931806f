"""The suite itself: one check = one test function, one requirement each."""

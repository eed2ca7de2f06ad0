"""Auctions: bidding (with proxy bids) under contention, live streams, close and settlement."""

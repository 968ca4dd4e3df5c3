"""Storylines: profiles, matching, seeding from documents and near-duplicate collapse."""

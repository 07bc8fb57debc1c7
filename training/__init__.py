"""Placeholder namespace; filled by later issues."""

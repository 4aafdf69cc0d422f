"""Thin click commands, one module per kestrel-* program: parse, call one domain function, print."""

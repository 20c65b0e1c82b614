"""Leads: a lead file in, ``Lead`` values out. File formats, encodings, the header, the
columns (phone, country, CRM id, params), each row's country and its phone as E.164.

Pure: reads the files it is given, writes none, never touches the network. Imports only the
base modules (``dialer.errors``, ``dialer.model``).
"""

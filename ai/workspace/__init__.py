"""A person's workspace: files under $LOOMI_HOME/workspace/<user id>/ reached only through
`paths` (no path leaves it), skills parsed from SKILL.md or a zip (`skills`), previews of
workspace files (`preview`) and of public web pages (`fetch`, which refuses private addresses)."""

"""DingTalk robots (企业内部应用机器人) over Stream mode (dingtalk-stream) or HTTP-mode callbacks
in; the session webhook or the robot OpenAPI out. Everything DingTalk-specific in the hub
lives in this folder."""

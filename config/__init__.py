"""Settings and logging set-up shared by the API, the workers and the tools."""

from config.settings import Settings, SettingsError, load_settings, load_settings_or_exit

__all__ = ["Settings", "SettingsError", "load_settings", "load_settings_or_exit"]

"""The built-in studies, one folder each (``reconlab.sweep.study.Study``).
The engine finds them, and any study a user installs, through the
``reconlab.studies`` entry points; nothing outside this folder imports one."""

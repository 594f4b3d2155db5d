{#- Values of the column lie in [min_value, max_value] (NULLs pass; test not_null separately).
    Our own version: dbt packages (dbt_utils) cannot be installed on this network. -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}
select {{ column_name }} as failing_value
from {{ model }}
where {{ column_name }} is not null
  and (
    false
    {%- if min_value is not none %} or {{ column_name }} {{ '<' if inclusive else '<=' }} {{ min_value }}{% endif %}
    {%- if max_value is not none %} or {{ column_name }} {{ '>' if inclusive else '>=' }} {{ max_value }}{% endif %}
  )
{% endtest %}

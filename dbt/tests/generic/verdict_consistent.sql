{#- A verdict agrees with the evidence published beside it (macros/verdicts.sql decides it at full
    precision; the published figures are rounded, which the checks allow for: p-values rounded to
    significant digits stay on their side of alpha, outward-rounded intervals stay on their side
    of a margin of whole hundredths of a point). Rows where any check is false or NULL fail:
    - the sentence exists exactly when the verdict does, and starts with the verdict's words;
    - p and the Holm-adjusted p are both there or both absent, and the adjusted one is not smaller;
    - significant: adjusted p <= alpha; no meaningful difference: not significant and the interval
      within +-margin; not significant, inconclusive: not significant, the interval not within
      the margin, and a positive minimum detectable difference; not tested: no test. -#}
{% test verdict_consistent(model, verdict, verdict_text, p_value, p_value_holm, ci_low, ci_high, mdd,
                           margin='equivalence_margin', alpha=0.05) %}
select *
from {{ model }}
where not coalesce((
    (({{ verdict }}) is null) = (({{ verdict_text }}) is null)
    and (({{ verdict }}) is null or ({{ verdict_text }}) like split_part({{ verdict }}, ',', 1) || '%')
    and ((({{ p_value }}) is null) = (({{ p_value_holm }}) is null))
    and (({{ p_value_holm }}) is null or ({{ p_value_holm }}) >= ({{ p_value }}))
    and case {{ verdict }}
        when 'significant' then ({{ p_value_holm }}) <= {{ alpha }}
        when 'no meaningful difference' then coalesce(({{ p_value_holm }}) >= {{ alpha }}, true)
            and ({{ ci_low }}) >= -({{ margin }}) and ({{ ci_high }}) <= ({{ margin }})
        when 'not significant, inconclusive' then ({{ p_value_holm }}) >= {{ alpha }} and ({{ mdd }}) > 0
            and not (({{ ci_low }}) >= -({{ margin }}) and ({{ ci_high }}) <= ({{ margin }}))
        when 'not tested' then ({{ p_value_holm }}) is null
        else ({{ verdict }}) is null
    end
), false)
{% endtest %}
